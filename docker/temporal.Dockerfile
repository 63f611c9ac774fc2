# A Temporal server on temper's debootstrap base: the Temporal CLI's dev server (the binary
# scripts/install-temporal.sh builds from its Go module, the same `temper up` runs; it embeds
# Temporal Server 1.29.1), persisted to SQLite in a volume. No image is pulled (no
# temporalio/auto-setup); scripts/docker-images.sh copies the binary into the build context.
# Arguments after the image are start-dev's (--port, --http-port, --metrics-port).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
COPY temporal /usr/local/bin/temporal
RUN useradd --system --home-dir /var/lib/temporal --create-home temporal
USER temporal
VOLUME ["/var/lib/temporal"]
ENTRYPOINT ["temporal", "server", "start-dev", "--headless", "--db-filename", "/var/lib/temporal/temporal.db", \
  "--namespace", "default", "--log-format", "json", "--log-level", "warn"]
CMD ["--ip", "127.0.0.1", "--port", "7233"]
