-- The W3C trace context (a `traceparent` header value, plus `tracestate` after a newline when
-- there is one) of the span that enqueued a run, so the worker's span for the run continues
-- the enqueuer's trace (pgsched/tracing.py). NULL when the enqueuer was not traced. Nullable
-- with no default: adding it rewrites nothing, and an untraced enqueue writes no more bytes.
ALTER TABLE {schema}.workflows ADD COLUMN trace_context text;
