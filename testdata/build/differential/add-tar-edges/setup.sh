mkdir -p t/in/sub && echo new > t/in/a && ln t/in/a t/in/hard && ln -s ../a t/in/sub/rel && ln -s /etc/passwd t/in/abs && chmod 755 t/in && chown 3:4 t/in/a
tar -cf edges.tar -C t in
tar -czf edges.tar.gz -C t .
rm -rf t
