# The fleet bridge (tools/bridge, README "Running a fleet"), non-root, nothing but its code:
#   docker build -t ocpp-bridge .
#   docker run --rm -v /secrets:/secrets:ro -p 9100:9100 ocpp-bridge \
#     --broker xxxx-ats.iot.eu-west-1.amazonaws.com:8883 --ca /secrets/AmazonRootCA1.pem \
#     --cert /secrets/bridge-0.pem --key /secrets/bridge-0.key \
#     --csms wss://csms.example.com/ocpp --auth /secrets/auth.json \
#     --shard 0/2 --inbound 'bridge/0/+/in' --http 0.0.0.0:9100
FROM python:3.11-slim
# the bridge's two dependencies, pinned as in requirements.txt
RUN pip install --no-cache-dir paho-mqtt==2.2.0 websockets==17.4 \
    && useradd --system --uid 10001 --no-create-home bridge
WORKDIR /app
COPY tools/__init__.py tools/policy.py tools/basic_auth.py tools/
COPY tools/bridge/ tools/bridge/
USER 10001
EXPOSE 9100
HEALTHCHECK --interval=30s --timeout=3s CMD python3 -c "import sys, urllib.request; \
    sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9100/healthz').status == 200 else 1)"
ENTRYPOINT ["python3", "-m", "tools.bridge"]
