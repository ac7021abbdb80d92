<?php
// Stands in for MoniWiki 1.2.1, whose download is gone: a page only PHP can render, so the
// story sees Apache run mod_php.
$title = 'MoniWiki';
$rcs = is_executable('/usr/bin/ci') ? 'RCS is installed' : 'RCS is missing';
?>
<html>
<head><title><?php echo $title; ?></title></head>
<body>
<h1><?php echo $title; ?>: FrontPage</h1>
<p>Rendered by PHP <?php echo PHP_MAJOR_VERSION . '.' . PHP_MINOR_VERSION; ?> (<?php echo php_sapi_name(); ?>), <?php echo $rcs; ?>.</p>
</body>
</html>
