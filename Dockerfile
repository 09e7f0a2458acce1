# syntax=docker/dockerfile:1
#
# heirloom-backup's image: the agent and every command, with the PostgreSQL and MariaDB programs
# the engines run. Build: docker build -t heirloom-backup:0.1.0 .
#
# The runtime stage is Debian 12 (bookworm), the release the tests run on, so the programs are the
# versions the tests use: PostgreSQL 15 and MariaDB 10.11. For PostgreSQL servers of another major
# version, add that version's client from the PostgreSQL project's apt repository
# (--build-arg PG_MAJORS="15 16 17" --build-arg PGDG=1): pg_basebackup and pg_dump must be at least
# as new as the server.

ARG DEBIAN_RELEASE=bookworm

FROM rust:1.89-${DEBIAN_RELEASE} AS build
WORKDIR /src
# The dependencies first, so that a change to the code does not fetch them again.
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
COPY policies ./policies
COPY fixtures ./fixtures
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin heirloom-backup \
    && install -D -m 0755 target/release/heirloom-backup /out/heirloom-backup

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG DEBIAN_RELEASE
ARG PG_MAJORS="15"
ARG PGDG=0
# No PostgreSQL cluster is created by the packages: the engines start their own scratch servers
# for drills, and a backup reads a server over the network.
RUN set -eux; \
    apt-get update; \
    apt-get install -y --no-install-recommends ca-certificates postgresql-common; \
    sed -ri 's/#?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf; \
    if [ "$PGDG" = "1" ]; then \
      apt-get install -y --no-install-recommends curl; \
      install -d /usr/share/postgresql-common/pgdg; \
      curl -fsSLo /usr/share/postgresql-common/pgdg/apt.postgresql.org.asc https://www.postgresql.org/media/keys/ACCC4CF8.asc; \
      echo "deb [signed-by=/usr/share/postgresql-common/pgdg/apt.postgresql.org.asc] https://apt.postgresql.org/pub/repos/apt ${DEBIAN_RELEASE}-pgdg main" > /etc/apt/sources.list.d/pgdg.list; \
      apt-get update; \
      apt-get purge -y curl; \
    fi; \
    packages=""; \
    for major in $PG_MAJORS; do packages="$packages postgresql-client-$major postgresql-$major"; done; \
    apt-get install -y --no-install-recommends $packages \
      mariadb-client mariadb-backup mariadb-server-core \
      tzdata; \
    apt-get autoremove -y; \
    rm -rf /var/lib/apt/lists/*
COPY --from=build /out/heirloom-backup /usr/local/bin/heirloom-backup
# A user of its own, not root (PostgreSQL's scratch servers refuse root anyway). Its home holds
# the default spool and scratch directories; mount a volume there, or at /tmp, when the root
# file system is read-only.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/heirloom --create-home heirloom
USER 10001:10001
WORKDIR /var/lib/heirloom
ENV TMPDIR=/tmp
EXPOSE 9847
ENTRYPOINT ["/usr/local/bin/heirloom-backup"]
CMD ["--help"]
