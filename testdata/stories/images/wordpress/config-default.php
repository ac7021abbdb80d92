<?php
// Debian's wp-config.php reads this file; the settings come from the container's environment,
// as in the official image.
define('DB_NAME', getenv('WORDPRESS_DB_NAME') ?: 'wordpress');
define('DB_USER', getenv('WORDPRESS_DB_USER') ?: 'wordpress');
define('DB_PASSWORD', getenv('WORDPRESS_DB_PASSWORD') ?: '');
define('DB_HOST', getenv('WORDPRESS_DB_HOST') ?: 'mysql');
define('WP_CONTENT_DIR', '/var/lib/wordpress/wp-content');
