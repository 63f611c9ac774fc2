# PostgreSQL from Debian's own package on temper's debootstrap base (scripts/docker-images.sh
# builds it; no image is pulled). Data in /var/lib/postgresql/data; settings by environment:
# POSTGRES_USER, POSTGRES_PASSWORD, POSTGRES_DB, POSTGRES_PORT (default 5432),
# POSTGRES_LISTEN (default 127.0.0.1; the compose stack shares the host's network).
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
RUN apt-get update -q && apt-get install -y -q --no-install-recommends postgresql-15 \
  && rm -rf /var/lib/apt/lists/* \
  && mkdir -p /var/lib/postgresql/data && chown -R postgres:postgres /var/lib/postgresql
COPY postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER postgres
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
VOLUME ["/var/lib/postgresql/data"]
ENTRYPOINT ["/usr/local/bin/postgres-entrypoint.sh"]
