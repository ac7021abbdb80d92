FROM busybox:diff
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["echo base"]
