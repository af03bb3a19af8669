# Sends multi-service traces with the official OpenTelemetry Python SDK over OTLP/HTTP (for the service-map integration test).
#
# Environment:
#   SEXTANT_ENDPOINT  base URL of the server, e.g. http://127.0.0.1:7300
#   SEXTANT_TOKEN     an ingest token
#
# Each service has its own TracerProvider (its own resource `service.name`), as three processes
# would. Twenty times: frontend SERVER "GET /buy" -> frontend CLIENT "POST /checkout" ->
# checkout SERVER "POST /checkout" -> checkout CLIENT "POST /pay" -> payment SERVER "POST /pay"
# (the first 4 fail with status ERROR), and checkout CLIENT "SELECT orders" with
# db.system=postgresql that no instrumented server answers. Exits 0 only when every export
# succeeded.

import os
import sys

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

endpoint = os.environ["SEXTANT_ENDPOINT"].rstrip("/")
token = os.environ["SEXTANT_TOKEN"]
failures = []


def provider(service):
    exporter = OTLPSpanExporter(
        endpoint=f"{endpoint}/v1/traces",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    export = exporter.export

    def checked(spans):
        result = export(spans)
        if result != SpanExportResult.SUCCESS:
            failures.append(f"{service}: {result}")
        return result

    exporter.export = checked
    tracer_provider = TracerProvider(resource=Resource.create({"service.name": service}))
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    return tracer_provider


providers = {name: provider(name) for name in ("frontend", "checkout", "payment")}
tracers = {name: p.get_tracer("sextant.service_map_test", "1.0.0") for name, p in providers.items()}

for i in range(20):
    with tracers["frontend"].start_as_current_span("GET /buy", kind=SpanKind.SERVER):
        with tracers["frontend"].start_as_current_span("POST /checkout", kind=SpanKind.CLIENT):
            with tracers["checkout"].start_as_current_span("POST /checkout", kind=SpanKind.SERVER):
                with tracers["checkout"].start_as_current_span("POST /pay", kind=SpanKind.CLIENT):
                    with tracers["payment"].start_as_current_span("POST /pay", kind=SpanKind.SERVER) as pay:
                        if i < 4:
                            pay.set_status(Status(StatusCode.ERROR, "card declined"))
                with tracers["checkout"].start_as_current_span(
                    "SELECT orders",
                    kind=SpanKind.CLIENT,
                    attributes={"db.system": "postgresql", "db.name": "orders"},
                ):
                    pass

for p in providers.values():
    p.shutdown()
if failures:
    print("\n".join(failures), file=sys.stderr)
    sys.exit(1)
