# Sends logs, traces and metrics to a running Sextant with the official OpenTelemetry Python SDK (for the otlp_sdk integration test).
#
# Environment:
#   SEXTANT_ENDPOINT  base URL of the server, e.g. http://127.0.0.1:4318
#   SEXTANT_TOKEN     an ingest token
#   SEXTANT_PROTOCOL  "http" (OTLP/HTTP protobuf) or "grpc" (OTLP/gRPC)
#   SEXTANT_RUN_ID    a unique string put into every log body, span name and metric attribute
#   SEXTANT_CA_FILE, SEXTANT_CLIENT_CERT, SEXTANT_CLIENT_KEY
#                     optional, with an https endpoint: the CA to trust, and a client
#                     certificate and key (PEM) to show
#
# Needs: opentelemetry-sdk, opentelemetry-exporter-otlp-proto-http and
# opentelemetry-exporter-otlp-proto-grpc (tested with 1.45.2). Exits 0 only when every export
# succeeded; failures are reported on stderr.
#
# What is sent (the Rust test checks exactly this):
#   - 5 log records "sdk log <run_id> <i>" (i = 0..4), emitted inside the parent span;
#   - 3 spans: "sdk parent <run_id>" with children "sdk child <run_id> 0" and "... 1";
#   - metrics (attribute run_id=<run_id>):
#       sdk_test.counter            Counter, 3 + 4 = 7
#       sdk_test.updown             UpDownCounter, 10 - 4 = 6
#       sdk_test.gauge              ObservableGauge, 42.5
#       sdk_test.histogram          Histogram, explicit bounds (10, 100, 1000), records 5, 50, 500, 5000
#       sdk_test.exp_histogram      Histogram as exponential histogram, records 1.5, 2.5, 10, 100

import logging
import os
import sys
import threading
from urllib.parse import urlparse

from opentelemetry import context as otel_context
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import BatchLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

METRIC_PREFIX = "sdk_test."
TIMEOUT_SECONDS = 10

# Exporters log their errors through `logging`; make sure those reach stderr.
logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")

failures = []
failures_lock = threading.Lock()


def record_failures(signal, exporter):
    """Wraps `exporter.export` so that any result other than SUCCESS (or an exception) is recorded.

    The processors and the metric reader swallow export failures (metric force_flush always
    returns True), so this is the only reliable way to know every request was accepted.
    """
    inner = exporter.export

    def export(*args, **kwargs):
        try:
            result = inner(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - reported, then re-raised
            with failures_lock:
                failures.append(f"{signal}: export raised {error!r}")
            raise
        name = getattr(result, "name", str(result))
        if name != "SUCCESS":
            with failures_lock:
                failures.append(f"{signal}: export returned {name}")
        return result

    exporter.export = export
    return exporter


def tls_files():
    """(ca, client certificate, client key) paths from the environment, each or None."""
    return tuple(os.environ.get(name) for name in ("SEXTANT_CA_FILE", "SEXTANT_CLIENT_CERT", "SEXTANT_CLIENT_KEY"))


def read(path):
    with open(path, "rb") as f:
        return f.read()


def make_exporters(protocol, endpoint, token):
    ca, cert, key = tls_files()
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        base = endpoint.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"}
        tls = {}
        if ca:
            tls = {"certificate_file": ca, "client_certificate_file": cert, "client_key_file": key}
        return (
            OTLPLogExporter(endpoint=f"{base}/v1/logs", headers=headers, timeout=TIMEOUT_SECONDS, **tls),
            OTLPSpanExporter(endpoint=f"{base}/v1/traces", headers=headers, timeout=TIMEOUT_SECONDS, **tls),
            OTLPMetricExporter(endpoint=f"{base}/v1/metrics", headers=headers, timeout=TIMEOUT_SECONDS, **tls),
        )
    if protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        parsed = urlparse(endpoint)
        target = parsed.netloc or endpoint
        # gRPC metadata keys must be lowercase.
        headers = (("authorization", f"Bearer {token}"),)
        tls = {"insecure": True}
        if ca:
            import grpc

            credentials = grpc.ssl_channel_credentials(
                root_certificates=read(ca),
                private_key=read(key) if key else None,
                certificate_chain=read(cert) if cert else None,
            )
            tls = {"insecure": False, "credentials": credentials}
        return (
            OTLPLogExporter(endpoint=target, headers=headers, timeout=TIMEOUT_SECONDS, **tls),
            OTLPSpanExporter(endpoint=target, headers=headers, timeout=TIMEOUT_SECONDS, **tls),
            OTLPMetricExporter(endpoint=target, headers=headers, timeout=TIMEOUT_SECONDS, **tls),
        )
    raise SystemExit(f"SEXTANT_PROTOCOL must be 'http' or 'grpc', not {protocol!r}")


def main():
    endpoint = os.environ["SEXTANT_ENDPOINT"]
    token = os.environ["SEXTANT_TOKEN"]
    protocol = os.environ["SEXTANT_PROTOCOL"]
    run_id = os.environ["SEXTANT_RUN_ID"]

    log_exporter, span_exporter, metric_exporter = make_exporters(protocol, endpoint, token)
    record_failures("logs", log_exporter)
    record_failures("traces", span_exporter)
    record_failures("metrics", metric_exporter)

    resource = Resource.create({"service.name": f"sdk-{protocol}", "sextant.run_id": run_id})

    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(BatchLogRecordProcessor(log_exporter))
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(span_exporter))
    # A long interval: nothing is exported by the timer, only by force_flush and shutdown.
    reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=600_000)
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(
                instrument_name=METRIC_PREFIX + "histogram",
                aggregation=ExplicitBucketHistogramAggregation(boundaries=(10.0, 100.0, 1000.0)),
            ),
            View(
                instrument_name=METRIC_PREFIX + "exp_histogram",
                aggregation=ExponentialBucketHistogramAggregation(),
            ),
        ],
    )

    # Traces, with the logs emitted inside the parent span so they carry its trace context.
    tracer = tracer_provider.get_tracer("sextant.sdk_test", "1.0.0")
    logger = logger_provider.get_logger("sextant.sdk_test", "1.0.0")
    with tracer.start_as_current_span(f"sdk parent {run_id}"):
        for i in range(2):
            with tracer.start_as_current_span(f"sdk child {run_id} {i}") as child:
                child.set_attribute("child.index", i)
        for i in range(5):
            logger.emit(
                context=otel_context.get_current(),
                severity_number=SeverityNumber.INFO,
                severity_text="INFO",
                body=f"sdk log {run_id} {i}",
                attributes={"run_id": run_id, "index": i},
            )

    # Metrics.
    meter = meter_provider.get_meter("sextant.sdk_test", "1.0.0")
    attributes = {"run_id": run_id}
    counter = meter.create_counter(METRIC_PREFIX + "counter", unit="1", description="a counter")
    counter.add(3, attributes)
    counter.add(4, attributes)
    updown = meter.create_up_down_counter(METRIC_PREFIX + "updown", unit="1", description="an up-down counter")
    updown.add(10, attributes)
    updown.add(-4, attributes)

    def observe_gauge(_options: CallbackOptions):
        yield Observation(42.5, attributes)

    meter.create_observable_gauge(METRIC_PREFIX + "gauge", callbacks=[observe_gauge], unit="C", description="a gauge")
    histogram = meter.create_histogram(METRIC_PREFIX + "histogram", unit="ms", description="explicit buckets")
    for value in (5.0, 50.0, 500.0, 5000.0):
        histogram.record(value, attributes)
    exp_histogram = meter.create_histogram(METRIC_PREFIX + "exp_histogram", unit="ms", description="exponential")
    for value in (1.5, 2.5, 10.0, 100.0):
        exp_histogram.record(value, attributes)

    # Flush everything, then shut down (the metric reader collects once more on shutdown).
    timeout_millis = TIMEOUT_SECONDS * 1000
    flushed = {
        "traces": tracer_provider.force_flush(timeout_millis),
        "logs": logger_provider.force_flush(timeout_millis),
        "metrics": meter_provider.force_flush(timeout_millis),
    }
    for signal, ok in flushed.items():
        if not ok:
            failures.append(f"{signal}: force_flush timed out")
    tracer_provider.shutdown()
    logger_provider.shutdown()
    meter_provider.shutdown(timeout_millis=timeout_millis)

    if failures:
        for failure in failures:
            print(f"send_telemetry ({protocol}): {failure}", file=sys.stderr)
        return 1
    print(f"send_telemetry ({protocol}): all exports succeeded", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
