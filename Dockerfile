# The image of rayservice.yaml: Ray's own image (same Ray and Python as pyproject.toml) with this
# project and every engine installed. pyworld builds from source and needs setuptools<81.
FROM rayproject/ray:2.60.0-py311-cu124
WORKDIR /home/ray/alltalk-serve
COPY --chown=ray:users . .
RUN PIP_CONSTRAINT=scripts/build-constraints.txt pip install --no-cache-dir -e ".[coqui,rvc]"
ENV PYTHONPATH=/home/ray/alltalk-serve
# Run on its own (KubeRay runs its own command instead), the image is the embedded server on the
# server root /mnt/alltalk (mount one there):
#   docker run -p 7851:7851 -v /srv/alltalk:/mnt/alltalk -e ALLTALK_API_KEYS=... --stop-timeout 60 <image>
# `docker stop` sends SIGTERM to it (PID 1): it drains, stops Serve and Ray, and exits 0 (README:
# Stopping); a stop takes up to about 30 s, more than docker's default 10 s, hence --stop-timeout.
RUN sudo mkdir -p /mnt/alltalk && sudo chown ray:users /mnt/alltalk
EXPOSE 7851
STOPSIGNAL SIGTERM
CMD ["python", "cli.py", "run", "--host", "0.0.0.0", "--root", "/mnt/alltalk"]
