FROM alpine
ARG NAME=world
RUN <<EOF
echo "hello $NAME"
EOF
RUN <<-"SCRIPT" bash
	echo 'tabs stripped, $NAME kept'
	SCRIPT
COPY <<one.txt <<two.txt /data/
first $NAME
one.txt
second
two.txt
RUN 3<<IN cat <&3
from fd 3
IN
