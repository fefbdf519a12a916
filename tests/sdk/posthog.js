// posthog-js, bundled into a test page (tests/sdkpage.py): it sends to lull instead of
// PostHog. `lullPostHog(origin, token, more)` initialises it (which captures a $pageview)
// with the options below and `more`, and resolves once it is loaded (window.posthog).
import posthog from "posthog-js";

window.lullPostHog = (origin, token, more = {}) =>
  new Promise((resolve) => {
    posthog.init(token, {
      api_host: origin,
      opt_out_useragent_filter: true, // headless Chromium's user agent looks like a bot
      request_queue_config: { flush_interval_ms: 250 },
      capture_pageview: true,
      capture_pageleave: false,
      autocapture: false,
      rageclick: false,
      capture_dead_clicks: false,
      capture_heatmaps: false,
      capture_exceptions: false,
      capture_performance: false,
      disable_session_recording: true,
      disable_surveys: true,
      disable_product_tours: true,
      disable_conversations: true,
      advanced_disable_flags: true, // no /flags nor remote config (/array/TOKEN/config)
      disable_external_dependency_loading: true,
      person_profiles: "identified_only",
      ...more,
      loaded: (ph) => {
        window.posthog = ph;
        resolve();
      },
    });
  });
