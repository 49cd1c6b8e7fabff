// OSC 1.0 messages to and from bytes: the WebSocket carries binary OSC (OSCQuery proposal).
"use strict";

const OSC = (() => {
  const enc = new TextEncoder();
  const dec = new TextDecoder();

  function padded(bytes) {
    const out = new Uint8Array((bytes.length + 4) & ~3);  // at least one NUL, to a multiple of 4
    out.set(bytes);
    return out;
  }

  // encode("/riff/alpha", [["f", 0.5]]) -> ArrayBuffer
  function encode(address, args) {
    const parts = [padded(enc.encode(address)), padded(enc.encode("," + args.map(a => a[0]).join("")))];
    for (const [tag, value] of args) {
      if (tag === "f" || tag === "i") {
        const b = new DataView(new ArrayBuffer(4));
        if (tag === "f") b.setFloat32(0, value); else b.setInt32(0, value);
        parts.push(new Uint8Array(b.buffer));
      } else if (tag === "h") {
        const b = new DataView(new ArrayBuffer(8));
        b.setBigInt64(0, BigInt(value));
        parts.push(new Uint8Array(b.buffer));
      } else if (tag === "s") {
        parts.push(padded(enc.encode(String(value))));
      }  // T and F carry no bytes
    }
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out.buffer;
  }

  // decode(ArrayBuffer) -> {address, args}; throws on what it cannot read
  function decode(buffer) {
    const view = new DataView(buffer);
    const bytes = new Uint8Array(buffer);
    let at = 0;
    function string() {
      let end = at;
      while (end < bytes.length && bytes[end] !== 0) end++;
      if (end >= bytes.length) throw new Error("unterminated OSC string");
      const s = dec.decode(bytes.subarray(at, end));
      at = (end + 4) & ~3;
      return s;
    }
    const address = string();
    const tags = string();
    const args = [];
    for (const tag of tags.slice(1)) {
      if (tag === "f") { args.push(view.getFloat32(at)); at += 4; }
      else if (tag === "i") { args.push(view.getInt32(at)); at += 4; }
      else if (tag === "h") { args.push(Number(view.getBigInt64(at))); at += 8; }
      else if (tag === "d") { args.push(view.getFloat64(at)); at += 8; }
      else if (tag === "s") { args.push(string()); }
      else if (tag === "T") { args.push(true); }
      else if (tag === "F") { args.push(false); }
      else throw new Error("unsupported OSC type " + tag);
    }
    return {address, args};
  }

  return {encode, decode};
})();
