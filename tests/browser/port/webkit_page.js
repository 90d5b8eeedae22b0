// The vendor's web kit samples ("Monitor call status"), names renamed only: the packages'
// imports become Ringline's /sdk/tuicallkit.js, and the component is the <tui-call-kit>
// element with the sample's props set as properties (React and Vue pages use the
// wrappers, docs/web.md). tests/browser/test_port_web.py records what console.log prints.
import { TUICallKitServer, TUICallEvent } from "/sdk/tuicallkit.js"; // was: 'tuicall-engine-webrtc' and the kit package

let handleUserEnter = function(event) {
console.log('TUICallEvent.USER_ENTER: ', event);
};

// The sample's two lines, run one after the other by the test (window.portOn / portOff).
window.portOn = () => TUICallKitServer.getTUICallEngineInstance().on(TUICallEvent.USER_ENTER, handleUserEnter);
window.portOff = () => TUICallKitServer.getTUICallEngineInstance().off(TUICallEvent.USER_ENTER, handleUserEnter);

// function App() { ... return (<TUICallKit beforeCalling={handleBeforeCalling} afterCalling={handleAfterCalling} />) }
const handleBeforeCalling = () => {
console.log("[TUICallKit Demo] beforeCalling");
};
const handleAfterCalling = () => {
console.log("[TUICallKit Demo] afterCalling");
};
const TUICallKit = document.createElement("tui-call-kit");
TUICallKit.beforeCalling = handleBeforeCalling;
TUICallKit.afterCalling = handleAfterCalling;
document.body.append(TUICallKit);

window.TUICallKitServer = TUICallKitServer;
