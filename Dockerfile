# The image of rayservice.yaml: Ray's own image (same Ray and Python as pyproject.toml) with this
# project and every engine installed. pyworld builds from source and needs setuptools<81.
FROM rayproject/ray:2.60.0-py311-cu124
WORKDIR /home/ray/alltalk-serve
COPY --chown=ray:users . .
RUN PIP_CONSTRAINT=scripts/build-constraints.txt pip install --no-cache-dir -e ".[coqui,rvc]"
ENV PYTHONPATH=/home/ray/alltalk-serve
