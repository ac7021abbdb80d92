FROM busybox:diff
LABEL from.base=yes shared=base
ENV BASE_ENV=1
CMD ["base-cmd"]
ONBUILD COPY trigger.txt /from-trigger/
ONBUILD RUN echo "onbuild ran" > /onbuild.txt
ONBUILD ENV TRIGGERED=yes
