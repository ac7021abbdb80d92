mkdir -p t/in && echo z > t/in/z && chown 7:7 t/in/z && tar -cf archive.tar -C t in && rm -rf t
