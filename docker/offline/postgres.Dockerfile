# A stand-in for the official postgres:15-bookworm image on machines that reach Debian's
# package mirror but no container registry (scripts/compose-smoke.sh builds it when the official
# image cannot be had). It honours the subset of the official image's interface that
# docker-compose.yml uses: POSTGRES_USER / POSTGRES_PASSWORD / POSTGRES_DB, the data directory
# /var/lib/postgresql/data, pg_isready on PATH, port 5432, password (scram) auth from the network.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/lib/postgresql/15 /etc/postgresql \
    && mkdir -p /var/lib/postgresql/data /run/postgresql \
    && chown -R postgres:postgres /var/lib/postgresql /run/postgresql
ENV PATH=/usr/lib/postgresql/15/bin:$PATH PGDATA=/var/lib/postgresql/data
COPY docker/offline/postgres-entrypoint.sh /usr/local/bin/postgres-entrypoint.sh
USER postgres
VOLUME ["/var/lib/postgresql/data"]
EXPOSE 5432
ENTRYPOINT ["sh", "/usr/local/bin/postgres-entrypoint.sh"]
