# A stand-in for the official haproxy:2.8-bookworm image where no container registry is
# reachable (scripts/compose-smoke.sh builds it then, tagged vl2v-offline/haproxy:2.6): Debian
# bookworm's haproxy package (2.6; docker/haproxy.cfg needs nothing newer), the official image's
# config path (/usr/local/etc/haproxy/haproxy.cfg) and its unprivileged user.
ARG BASE_IMAGE=local/python:3.11-bookworm
FROM ${BASE_IMAGE}
RUN apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends haproxy \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /usr/local/etc/haproxy
USER haproxy
EXPOSE 8080
CMD ["haproxy", "-W", "-db", "-f", "/usr/local/etc/haproxy/haproxy.cfg"]
