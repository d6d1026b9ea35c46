# Airflow image with this provider installed from the repository (used by docker-compose.yaml).
#
#   docker compose build                      # or: docker build -t airflow-batch-provider:local .
#   docker build --build-arg AIRFLOW_VERSION=3.3.2 -t airflow-batch-provider:local .
#
# Pinning apache-airflow in the same pip call keeps pip from upgrading or downgrading the Airflow of the base
# image. celery<5.7: celery 5.7 breaks apache-airflow-providers-celery 3.26 ("cannot import name 'retry' from
# 'celery.backends.database'"); drop the pin once the celery provider supports it.
ARG AIRFLOW_VERSION=3.3.2
FROM apache/airflow:${AIRFLOW_VERSION}
# An ARG before FROM is not visible after it: declare it again.
ARG AIRFLOW_VERSION

COPY --chown=airflow:0 pyproject.toml README.md /opt/provider-src/
COPY --chown=airflow:0 airflow_batch_provider/ /opt/provider-src/airflow_batch_provider/

RUN pip install --no-cache-dir \
        "apache-airflow==${AIRFLOW_VERSION}" \
        "/opt/provider-src[amazon,celery]" \
        "celery<5.7"
