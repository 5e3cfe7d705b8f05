// The guide's raw WebSocket examples: /ws/echo and /ws/broadcast (see raw-websocket.html).
function connect(path, logId, statusId, formId, inputId) {
  const log = document.getElementById(logId);
  const status = document.getElementById(statusId);
  let socket;
  function add(text) {
    const line = document.createElement("div");
    line.textContent = text;
    log.appendChild(line);
    log.scrollTop = log.scrollHeight;
  }
  function open() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socket = new WebSocket(`${scheme}://${location.host}${path}`);
    socket.addEventListener("open", () => { status.textContent = "connected"; });
    socket.addEventListener("message", (event) => add(String(event.data)));
    socket.addEventListener("close", () => {
      status.textContent = "disconnected, reconnecting…";
      setTimeout(open, 1000);
    });
  }
  document.getElementById(formId).addEventListener("submit", (event) => {
    event.preventDefault();
    const input = document.getElementById(inputId);
    if (input.value && socket.readyState === WebSocket.OPEN) socket.send(input.value);
    input.value = "";
  });
  open();
}
connect("/ws/echo", "log", "echo-status", "echo-form", "echo-input");
connect("/ws/broadcast", "room", "room-status", "room-form", "room-input");
