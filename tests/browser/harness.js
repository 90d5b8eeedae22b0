// Evaluated in each test page: window.rlSetup({sdkAppId, userId, userSig, serverUrl?})
// creates a CallEngine (on the page's origin unless serverUrl is given), records every
// event it emits in window.rl.events, shows the local and remote videos, and keeps window.rl.stats up to date from getStats() (every 250 ms)
// so that tests can wait on plain conditions.
window.rlSetup = async ({ sdkAppId, userId, userSig, serverUrl }) => {
  const m = await import("/sdk/ringline.js");
  document.body.innerHTML = "<div id=tiles></div>";
  const engine = new m.CallEngine({
    serverUrl: serverUrl ?? location.origin,
    video: { width: { ideal: 320 }, height: { ideal: 240 }, frameRate: { ideal: 15 } },
  });
  const rl = { m, engine, events: [], stats: {}, userId };
  window.rl = rl;
  const names = [...Object.values(m.TUICallEvent), ...Object.values(m.RinglineEvent)];
  for (const name of names) {
    engine.on(name, (p) => {
      const copy = {};
      for (const [k, v] of Object.entries(p || {})) if (!(v instanceof MediaStream)) copy[k] = v;
      rl.events.push({ name, p: copy, t: Date.now() });
    });
  }
  const tile = (id) => {
    let v = document.getElementById("v-" + id);
    if (!v) {
      v = document.createElement("video");
      v.id = "v-" + id;
      v.width = 160;
      v.height = 120;
      document.getElementById("tiles").appendChild(v);
    }
    return v;
  };
  engine.on(m.TUICallEvent.ON_CALL_BEGIN, () => engine.startLocalView(tile("local")));
  engine.on(m.TUICallEvent.USER_ENTER, ({ userID }) => engine.startRemoteView(userID, tile(userID)));
  rl.poll = setInterval(async () => {
    const out = {};
    for (const u of engine.remoteUsers) {
      const pc = engine.getPeerConnection(u);
      if (!pc) continue;
      const s = { framesDecoded: 0, audioLevel: 0, audioEnergy: 0, audioPackets: 0, ice: pc.iceConnectionState };
      const stats = await pc.getStats();
      for (const r of stats.values()) {
        if (r.type === "inbound-rtp" && r.kind === "video") s.framesDecoded = r.framesDecoded || 0;
        if (r.type === "inbound-rtp" && r.kind === "audio") {
          s.audioLevel = r.audioLevel || 0;
          s.audioEnergy = r.totalAudioEnergy || 0;
          s.audioPackets = r.packetsReceived || 0;
        }
      }
      const video = pc.getTransceivers().find((t) => t.receiver.track.kind === "video");
      s.videoDirection = video ? video.currentDirection : null;
      s.transceivers = pc.getTransceivers().map((t) => t.receiver.track.kind);
      out[u] = s;
    }
    rl.stats = out;
  }, 250);
  await engine.init({ sdkAppId, userId, userSig });
};
