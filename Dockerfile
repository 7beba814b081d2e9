# aggregator: the feed service in a container.
#   docker build -t aggregator .
#   docker run -p 8080:8080 -v "$PWD/seeds:/srv/seeds:ro" \
#     -e AGGREGATOR_SITE__PUBLIC_URL=https://feeds.example.org/ aggregator
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY aggregator ./aggregator
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/aggregator aggregator \
    && mkdir -p /srv/seeds /srv/public /var/lib/aggregator /etc/aggregator \
    && chown aggregator:aggregator /srv/public /var/lib/aggregator
COPY --from=build /install /usr/local
COPY config/aggregator.yaml /etc/aggregator/aggregator.yaml
COPY seeds /srv/seeds
ENV AGGREGATOR_CONFIG=/etc/aggregator/aggregator.yaml \
    AGGREGATOR_SEEDS__DIR=/srv/seeds \
    AGGREGATOR_OUTPUT__DIR=/srv/public \
    AGGREGATOR_STATE__PATH=/var/lib/aggregator/state.sqlite3 \
    AGGREGATOR_SERVER__HOST=0.0.0.0 \
    AGGREGATOR_SERVER__PORT=8080 \
    AGGREGATOR_LOGGING__FORMAT=json \
    PYTHONUNBUFFERED=1
VOLUME ["/srv/seeds", "/srv/public", "/var/lib/aggregator"]
USER aggregator
WORKDIR /var/lib/aggregator
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 CMD ["aggregator", "healthcheck"]
ENTRYPOINT ["aggregator"]
CMD ["run"]
