// The vendor's uni-app TUICallEvent samples, every one, as its page shows them. The only
// change: the engine comes from the test page instead of uni.requireNativePlugin(...).
// (tests/browser/test_port_web.py records what console.log prints.)
const TUICallEngine = window.rl.engine; // was: uni.requireNativePlugin('TencentCloud-TUICallKit-TUICallEngine')

TUICallEngine.addEventListener('onError', (res) => {
console.log('onError', JSON.stringify(res));
});
TUICallEngine.addEventListener('onCallReceived', (res) => {
console.log('onCallReceived', JSON.stringify(res));
});
TUICallEngine.addEventListener('onCallCancelled', (res) => {
console.log('onCallCancelled', res);
});
TUICallEngine.addEventListener('onCallBegin', (res) => {
console.log('onCallBegin', JSON.stringify(res));
});
TUICallEngine.addEventListener('onCallEnd', (res) => {
console.log('onCallEnd', JSON.stringify(res));
});
TUICallEngine.addEventListener('onCallMediaTypeChanged', (res) => {
console.log('onCallMediaTypeChanged', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserReject', (res) => {
console.log('onUserReject', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserNoResponse', (res) => {
console.log('onUserNoResponse', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserLineBusy', (res) => {
console.log('onUserLineBusy', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserJoin', (res) => {
console.log('onUserJoin', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserLeave', (res) => {
console.log('onUserLeave', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserVideoAvailable', (res) => {
console.log('onUserVideoAvailable', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserAudioAvailable', (res) => {
console.log('onUserAudioAvailable', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserVoiceVolumeChanged', (res) => {
console.log('onUserVoiceVolumeChanged', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserNetworkQualityChanged', (res) => {
console.log('onUserNetworkQualityChanged', JSON.stringify(res));
});
TUICallEngine.addEventListener('onKickedOffline', (res) => {
console.log('onKickedOffline', JSON.stringify(res));
});
TUICallEngine.addEventListener('onUserSigExpired', (res) => {
console.log('onUserSigExpired', JSON.stringify(res));
});
