// Amplitude's Browser SDK, bundled into a test page (tests/sdkpage.py): it sends to lull
// instead of api2.amplitude.com. `lullAmplitude(origin, apiKey, path)` initialises it and
// puts it on window.amplitude; `path` is /2/httpapi or /batch.
import * as amplitude from "@amplitude/analytics-browser";

window.lullAmplitude = async (origin, apiKey, path) => {
  await amplitude.init(apiKey, undefined, {
    serverUrl: `${origin}${path}`,
    fetchRemoteConfig: false, // no config from Amplitude's servers
    enableDiagnostics: false,
    autocapture: false,
    flushIntervalMillis: 200,
    flushQueueSize: 30,
    logLevel: amplitude.Types.LogLevel.Warn,
  }).promise;
  window.amplitude = amplitude;
};
