#!/usr/bin/env bash
# Seed 000, "Nginx 웹 서버 띄우기": nginx serves the directory the reader is in, first empty
# (403 Forbidden), then with the index.html the reader writes.
. ../lib.sh
trap 'builder rm -f nginx >/dev/null 2>&1 || true' EXIT

builder run --rm --name nginx -p 3000:80 \
  -v $(pwd)/:/usr/share/nginx/html/ \
  nginx &
app=$!
wait_for_http localhost:3000

curl -s localhost:3000

cat > index.html <<'HTML'
<html>
  <head>
    <title>Docker</title>
  </head>
  <body>
    <h1>Hello, Docker!</h1>
  </body>
</html>
HTML
curl -s localhost:3000

builder stop nginx
wait $app
