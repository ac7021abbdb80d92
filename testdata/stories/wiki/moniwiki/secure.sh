#!/bin/sh
# MoniWiki's secure.sh makes its configuration read-only; the stand-in page is all there is.
chmod 644 /var/www/moniwiki/index.php
