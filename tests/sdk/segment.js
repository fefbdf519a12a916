// Segment's analytics-next, bundled into a test page (tests/sdkpage.py): it sends to lull
// instead of api.segment.io. `lullSegment(origin, writeKey, batching)` loads it with the
// settings given here (no request to Segment's CDN) and puts it on window.analytics.
import { AnalyticsBrowser } from "@segment/analytics-next";

window.lullSegment = async (origin, writeKey, batching) => {
  const url = new URL(origin);
  const segmentio = {
    apiKey: writeKey,
    apiHost: `${url.host}/v1`, // events go to http://HOST/v1/t, /v1/p, ... (or /v1/b)
    protocol: url.protocol.replace(":", ""),
  };
  if (batching) {
    segmentio.deliveryStrategy = { strategy: "batching", config: { size: 5, timeout: 300 } };
  }
  const [analytics] = await AnalyticsBrowser.load(
    {
      writeKey,
      // What Segment's CDN would answer for this source: one destination, Segment.io,
      // and no metrics to api.segment.io.
      cdnSettings: { integrations: { "Segment.io": segmentio }, metrics: { sampleRate: 0 } },
    },
    { integrations: { "Segment.io": segmentio } },
  );
  window.analytics = analytics;
};
