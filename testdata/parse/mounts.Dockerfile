FROM alpine
RUN --mount=type=bind,source=src,target=/src,rw \
    --mount=type=cache,id=apk,target=/var/cache/apk,sharing=private,mode=0755,uid=0,gid=0 \
    --mount=type=tmpfs,target=/tmp,size=64m \
    --mount=type=secret,id=token,env=TOKEN,required \
    --mount=type=ssh,id=default,target=/run/ssh.sock \
    --network=none --security=sandbox \
    ls /src
