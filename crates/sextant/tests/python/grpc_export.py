# Calls Sextant's OTLP/gRPC Export methods with request bodies made by a Rust test, and prints
# the gRPC status of each call (for the isolation test, tests/it/isolation.rs).
#
# Usage: grpc_export.py HOST:PORT TOKEN TENANT SIGNAL=FILE...
#   TOKEN   sent as `authorization: Bearer TOKEN`
#   TENANT  sent as `x-sextant-tenant` unless it is "-"
#   SIGNAL  logs, metrics or traces; FILE holds the serialized Export*ServiceRequest
#
# Prints one line per call: `SIGNAL STATUS_CODE DETAILS`. Needs grpcio (installed with
# opentelemetry-exporter-otlp-proto-grpc).

import sys

import grpc

METHODS = {
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}


def main():
    target, token, tenant = sys.argv[1:4]
    metadata = [("authorization", "Bearer " + token)]
    if tenant != "-":
        metadata.append(("x-sextant-tenant", tenant))
    with grpc.insecure_channel(target) as channel:
        for pair in sys.argv[4:]:
            signal, path = pair.split("=", 1)
            with open(path, "rb") as f:
                body = f.read()
            call = channel.unary_unary(
                METHODS[signal],
                request_serializer=None,
                response_deserializer=None,
            )
            try:
                call(body, metadata=metadata, timeout=30)
                print(signal, "OK", "-")
            except grpc.RpcError as err:
                print(signal, err.code().name, err.details().replace("\n", " "))


if __name__ == "__main__":
    main()
