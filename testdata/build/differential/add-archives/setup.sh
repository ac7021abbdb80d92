mkdir -p t/in/deep && echo a > t/in/a && echo d > t/in/deep/d && ln -s a t/in/la && chmod 700 t/in/deep && chown -R 5:6 t/in/deep
tar -cf plain.tar -C t in
tar -czf gz.tar.gz -C t in
tar -cjf bz.tar.bz2 -C t in
tar -cJf xz.tar.xz -C t in
cp plain.tar renamed.tar
printf 'just text\n' | gzip > notatar.gz
rm -rf t
