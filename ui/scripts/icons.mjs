// Draws the app icons (PNG) from the same shapes as public/icon.svg, with no
// image tools: a rounded frame and a lightning bolt, 4×4 supersampled.
// Run: node scripts/icons.mjs (writes into public/; the files are committed).
import { writeFileSync } from 'node:fs';
import { deflateSync } from 'node:zlib';

const BG = [0x0f, 0x11, 0x15];
const FRAME = [0xff, 0x5c, 0x4d];
const BOLT = [0xff, 0xd4, 0x79];
// Bolt polygon in the 64×64 design space of icon.svg.
const BOLT_PTS = [[22, 20], [30, 33], [24, 34], [42, 46], [34, 31], [40, 30], [28, 18]];

function inPolygon(x, y, pts) {
  let inside = false;
  for (let i = 0, j = pts.length - 1; i < pts.length; j = i++) {
    const [xi, yi] = pts[i];
    const [xj, yj] = pts[j];
    if ((yi > y) !== (yj > y) && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
  }
  return inside;
}

function inRoundRect(x, y, x0, y0, x1, y1, r) {
  if (x < x0 || x > x1 || y < y0 || y > y1) return false;
  const cx = Math.min(Math.max(x, x0 + r), x1 - r);
  const cy = Math.min(Math.max(y, y0 + r), y1 - r);
  return (x - cx) ** 2 + (y - cy) ** 2 <= r * r;
}

// color of a point in design space; `pad` shrinks the art for maskable icons.
function sample(x, y, pad, rounded) {
  const s = 64 / (64 - 2 * pad);
  const u = (x - pad) * s;
  const v = (y - pad) * s;
  if (rounded && !inRoundRect(x, y, 0, 0, 64, 64, 14)) return null;
  if (inPolygon(u, v, BOLT_PTS)) return BOLT;
  const outer = inRoundRect(u, v, 7.5, 7.5, 56.5, 56.5, 10.5);
  const inner = inRoundRect(u, v, 12.5, 12.5, 51.5, 51.5, 5.5);
  if (outer && !inner) return FRAME;
  return BG;
}

function crc32(buf) {
  let c = ~0;
  for (const b of buf) {
    c ^= b;
    for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1));
  }
  return ~c >>> 0;
}

function chunk(type, data) {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const td = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(td));
  return Buffer.concat([len, td, crc]);
}

function png(size, { pad = 0, rounded = true } = {}) {
  const SS = 4;
  const rows = [];
  for (let py = 0; py < size; py++) {
    const row = Buffer.alloc(1 + size * 4);
    for (let px = 0; px < size; px++) {
      let r = 0, g = 0, b = 0, a = 0;
      for (let sy = 0; sy < SS; sy++) {
        for (let sx = 0; sx < SS; sx++) {
          const x = ((px + (sx + 0.5) / SS) / size) * 64;
          const y = ((py + (sy + 0.5) / SS) / size) * 64;
          const c = sample(x, y, pad, rounded);
          if (c === null) continue;
          r += c[0]; g += c[1]; b += c[2]; a += 1;
        }
      }
      const o = 1 + px * 4;
      if (a > 0) {
        row[o] = Math.round(r / a);
        row[o + 1] = Math.round(g / a);
        row[o + 2] = Math.round(b / a);
      }
      row[o + 3] = Math.round((a / (SS * SS)) * 255);
    }
    rows.push(row);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(size, 0);
  ihdr.writeUInt32BE(size, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 6; // RGBA
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.concat(rows), { level: 9 })),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

const out = new URL('../public/', import.meta.url);
writeFileSync(new URL('icon-192.png', out), png(192));
writeFileSync(new URL('icon-512.png', out), png(512));
// Maskable: full-bleed background, art inside the 80% safe zone.
writeFileSync(new URL('icon-maskable-512.png', out), png(512, { pad: 8, rounded: false }));
// Apple draws its own rounded corners: opaque square.
writeFileSync(new URL('apple-touch-icon.png', out), png(180, { rounded: false }));
