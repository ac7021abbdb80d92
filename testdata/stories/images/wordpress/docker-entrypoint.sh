#!/bin/sh
# As the official image: an empty /var/www/html (a fresh volume or bind mount) gets WordPress.
set -eu
if [ ! -e /var/www/html/index.php ] && [ ! -e /var/www/html/wp-includes/version.php ]; then
	cp -a /usr/share/wordpress/. /var/www/html/
	chown -R www-data:www-data /var/www/html
	echo "WordPress has been successfully copied to /var/www/html"
fi
exec "$@"
