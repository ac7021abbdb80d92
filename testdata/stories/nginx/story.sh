#!/usr/bin/env bash
# Seed 000, "Nginx 웹 서버 띄우기": nginx serves the directory the reader is in, first empty
# (403 Forbidden), then with the index.html the reader writes.
. ../lib.sh
trap 'builder rm -f nginx >/dev/null 2>&1 || true' EXIT

# The tutorial: builder run --rm -p 3000:80 -v $(pwd)/:/usr/share/nginx/html/ nginx
# Until -p exists the container shares the host's network, so nginx answers on its own port 80.
builder run --rm --name nginx --network host \
  -v $(pwd)/:/usr/share/nginx/html/ \
  nginx &
app=$!
wait_for_http localhost:80

curl -s localhost:80

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
curl -s localhost:80

builder stop nginx
wait $app
