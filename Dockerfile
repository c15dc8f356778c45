# syntax=docker/dockerfile:1
# The msp-operator image: `make image` builds it as msp-operator:<crate version>.
#
# Stage 1 builds the release binary on Debian 12 (bookworm), the same Debian
# as the runtime image, so the binary's glibc matches. Stage 2 is distroless:
# glibc and CA certificates, no shell, no package manager, user nonroot
# (65532), which the Helm chart's securityContext also requires.
#
# Both bases are build arguments, for mirrors and offline builds. Without a
# registry, `make image-local` (tools/image/build.sh) builds the binary on the
# host and puts it on the same runtime base (tools/image/Dockerfile.prebuilt).

ARG BUILDER_IMAGE=docker.io/library/rust:1.95-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${BUILDER_IMAGE} AS build
WORKDIR /src
# The whole workspace: Cargo needs every member's manifest (testenv/) to load it.
COPY . .
ENV CARGO_PROFILE_RELEASE_STRIP=symbols \
    CARGO_PROFILE_RELEASE_LTO=thin \
    CARGO_PROFILE_RELEASE_CODEGEN_UNITS=4
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin msp-operator \
 && install -D -m 0755 target/release/msp-operator /out/msp-operator \
 && /out/msp-operator version

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/msp-operator /msp-operator
USER 65532:65532
# Probes (/healthz, /readyz) and Prometheus metrics (/metrics).
EXPOSE 8081 8080
ENTRYPOINT ["/msp-operator"]
CMD ["run"]
