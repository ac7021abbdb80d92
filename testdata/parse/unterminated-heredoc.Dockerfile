FROM alpine
RUN cat <<EOF
never ends
