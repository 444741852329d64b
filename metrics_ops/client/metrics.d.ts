// Types of metrics-ops's browser script as an ES module (metrics.mjs; `metrics-ops client --module`).
// The classic script (metrics.js) puts the same functions on window.metricsOps.

/** Settings; the tag takes them as data-* attributes (data-sample-rate="0.25", data-keep-query="true", ...). */
export interface MetricsOptions {
  /** Route of one event (default "/api/metrics/event"); page views go here at once. */
  endpoint?: string;
  /** Route of a batch of queued events (default: endpoint + "s", i.e. "/api/metrics/events"). */
  batchEndpoint?: string;
  /** Share of visitors (or events) kept, 0..1; a string such as import.meta.env.VITE_METRICS_SAMPLE_RATE is
   *  read as a number; an empty or blank string (an unset Vite variable), or anything outside 0..1, counts as 1.
   *  Default 1. Sent in each event as sample_rate; serve accepts 0.000001 .. 1. */
  sampleRate?: number | string;
  /** "visitor" (default): a visitor is in or out for all its events; "event": each event decided alone. */
  sample?: "visitor" | "event";
  /** false: send even when the browser signals Global Privacy Control or Do Not Track. Default true. */
  privacySignals?: boolean | "true" | "false";
  /** true: send the path with its query string and fragment. Default false (they often carry e-mails, tokens). */
  keepQuery?: boolean | "true" | "false";
}

/** Stored as the event's metadata, next to `path`; JSON values only (serve's limits: docs/ingestion.md, "An event"). */
export type Metadata = Record<string, unknown>;

/** Change settings; undefined and null values are ignored, so an unset Vite variable keeps the default. */
export function configure(options: MetricsOptions): void;
/** Queue an event (name: 1-64 of a-z 0-9 _ . : -); queued events go as one batch within 5 s, at 20 events,
 *  or when the page is hidden or left. */
export function sendEvent(event: string, metadata?: Metadata): void;
/** The same as sendEvent (the tag's name for it). */
export function track(event: string, metadata?: Metadata): void;
/** Send a page_view for the current path at once, unless the last one was for the same path. */
export function pageView(): void;
/** Send the queued events now. */
export function flush(): void;

declare global {
  interface Window {
    metricsOps: {
      configure: typeof configure;
      sendEvent: typeof sendEvent;
      track: typeof track;
      pageView: typeof pageView;
      flush: typeof flush;
    };
  }
}
