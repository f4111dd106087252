# The Praxis image: the CLI, the worker and the edge (`praxis worker`, `praxis edge`, ...).
# compose.yaml runs it against a 3-node NATS cluster.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY schemas schemas
COPY bus bus
COPY workers workers
COPY edge edge
COPY cli cli
# praxis/ links the folders above into one import package, praxis.
COPY praxis praxis
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /var/lib/praxis praxis \
    && mkdir -p /var/lib/praxis/credentials \
    && chown -R praxis /var/lib/praxis

# Not root. A new named volume mounted at /var/lib/praxis/credentials takes this owner.
USER praxis
WORKDIR /var/lib/praxis
ENV PRAXIS_DATA_DIR=/var/lib/praxis
EXPOSE 8000 9100

ENTRYPOINT ["praxis"]
# compose.yaml gives each service its command (worker, edge, bus provision, ...).
CMD ["--help"]
