//! Shared helpers for the criterion benchmarks (see benches/*.rs) and the
//! profiling examples (see examples/*.rs).

/// The parse benchmark's Dockerfile: 10,000 instructions of every kind, with flags,
/// continuations, heredocs, exec and shell forms.
pub fn generated_dockerfile() -> String {
    dockerfile()
}

const INSTRUCTIONS: usize = 10_000;

/// One block of 20 instructions covering every kind; repeated to 10,000.
fn block(i: usize) -> String {
    format!(
        r#"FROM --platform=$BUILDPLATFORM golang:1.22-alpine AS build{i}
ARG VERSION=1.{i}.0
ENV GOFLAGS=-trimpath CGO_ENABLED=0 \
    GOPATH=/go
LABEL org.opencontainers.image.version="${{VERSION}}" maintainer="team{i}@example.com"
WORKDIR /src/app{i}
COPY --chown=1000:1000 --chmod=0644 go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod,sharing=locked \
    --mount=type=bind,source=go.sum,target=go.sum \
    go mod download && \
    go build -o /out/app{i} ./cmd/app
RUN <<EOF
set -eu
echo "building {i}"
EOF
ADD --checksum=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef https://example.com/a{i}.tgz /tmp/
COPY --from=build{i} --link /out/app{i} /usr/local/bin/app
EXPOSE 8080/tcp 9090
VOLUME ["/data/{i}", "/cache"]
USER app:app
HEALTHCHECK --interval=30s --timeout=3s --retries=3 CMD ["/usr/local/bin/app", "health"]
STOPSIGNAL SIGTERM
SHELL ["/bin/sh", "-ec"]
ONBUILD COPY . /src
ENTRYPOINT ["/usr/local/bin/app"]
CMD ["--port", "8080"]
MAINTAINER someone
"#
    )
}

fn dockerfile() -> String {
    let mut s = String::from("# syntax=docker/dockerfile:1\nARG BASE=alpine\n");
    let mut i = 0;
    while i * 20 < INSTRUCTIONS - 1 {
        s.push_str(&block(i));
        i += 1;
    }
    s
}
