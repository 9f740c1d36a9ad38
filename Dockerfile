# bids-deid BIDS-App image.
#   docker build --build-arg VERSION=0.1.0 -t bids-deid:0.1.0 .
#   docker run --rm -u "$(id -u):$(id -g)" --read-only --tmpfs /tmp --network=none \
#     -v /data/bids:/data:ro -v /data/out:/out -v /data/private:/private -v "$HOME/keys:/keys:ro" \
#     bids-deid:0.1.0 /data /out participant --key-file /keys/study.key --private-dir /private
# Run it as yourself (-u): the image's own user (uid 10001) cannot read your 0600 key. Commands
# for every step, Podman and Apptainer: docs/container.md (scripts/container-test.sh runs them).
# Everything is installed at build time; nothing is downloaded at run time. The image writes
# only to the output, the private dir, -w, and /tmp (mount a tmpfs there with --read-only).
# BASE must provide python3.11 with venv (default: the official slim image; tests use a
# debootstrapped Debian bookworm, whose python3 is 3.11).
ARG BASE=python:3.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
COPY . /src
WORKDIR /src
# Wheels pre-downloaded into .container-wheels/ (no network in the build) are used when present.
RUN python3 -m venv /opt/bids-deid \
 && if ls .container-wheels/*.whl >/dev/null 2>&1; then \
      /opt/bids-deid/bin/pip install --no-index --find-links .container-wheels -r requirements.lock bids-deid; \
    else \
      /opt/bids-deid/bin/pip install -r requirements.lock \
      && /opt/bids-deid/bin/pip install --no-deps . ; \
    fi \
 && /opt/bids-deid/bin/pip check \
 && /opt/bids-deid/bin/pip uninstall -y -q pip \
 && find /opt/bids-deid/lib -depth -type d -name tests -path '*/site-packages/*' -exec rm -rf {} + \
 && /opt/bids-deid/bin/python -c "import bids_deid.cli, bids_deid.pipeline, bids_deid.deface, bids_deid.demo, scipy.ndimage, SimpleITK, onnxruntime" \
 && /opt/bids-deid/bin/python -m compileall -q -j 0 /opt/bids-deid/lib
# Warm deno's cache once so the validator starts offline and fast; at run time it is read-only.
RUN mkdir -p /tmp/dd/sub-01/anat \
 && printf '{"Name":"warm-up","BIDSVersion":"1.9.0"}' > /tmp/dd/dataset_description.json \
 && DENO_DIR=/opt/deno-cache DENO_NO_UPDATE_CHECK=1 /opt/bids-deid/bin/bids-validator-deno --format json /tmp/dd >/dev/null || true \
 && chmod -R a+rX /opt/deno-cache && rm -rf /tmp/dd

FROM ${BASE}
ARG VERSION=unknown
ARG BUILD_DATE=unknown
ARG VCS_REF=unknown
LABEL org.opencontainers.image.title="bids-deid" \
      org.opencontainers.image.description="De-identify neuroimaging data (BIDS, DICOM, twix) into a shareable, validated BIDS dataset (a BIDS-App)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.documentation="docs/container.md"
RUN useradd --system --no-create-home --home-dir /tmp --shell /usr/sbin/nologin --uid 10001 bidsdeid
COPY --from=build /opt/bids-deid /opt/bids-deid
COPY --from=build /opt/deno-cache /opt/deno-cache
# Writable places all under /tmp (a tmpfs with --read-only); caches are never needed.
ENV PATH=/opt/bids-deid/bin:$PATH \
    HOME=/tmp \
    TMPDIR=/tmp \
    XDG_CACHE_HOME=/tmp/.cache \
    TEMPLATEFLOW_HOME=/tmp/templateflow \
    DENO_DIR=/opt/deno-cache \
    DENO_NO_UPDATE_CHECK=1 \
    DENO_NO_PROMPT=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BIDS_DEID_CONTAINER_TAG="bids-deid:${VERSION}"
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["bids-deid"]
CMD ["--help"]
