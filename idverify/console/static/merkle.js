// Proof checks done in the browser, so that a verdict never rests on the server's word:
// RFC 9162 (RFC 6962) leaf and node hashing, inclusion and consistency proofs (section 2.1.3.2
// and 2.1.4.2), and the Ed25519 signature over the tree head's checkpoint text, all with WebCrypto.

export class ProofError extends Error {}

const encoder = new TextEncoder();

export function fromBase64(text) {
  const raw = atob(text);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  return bytes;
}

export function toBase64(bytes) {
  let raw = "";
  for (const b of bytes) raw += String.fromCharCode(b);
  return btoa(raw);
}

export function toHex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) { out.set(p, at); at += p.length; }
  return out;
}

export function equalBytes(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}

async function sha256(bytes) {
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
}

// SHA-256(0x00 || entry): the entry's bytes exactly as stored.
export function leafHash(entryBytes) {
  return sha256(concat(new Uint8Array([0]), entryBytes));
}

function nodeHash(left, right) {
  return sha256(concat(new Uint8Array([1]), left, right));
}

function checkHashes(hashes) {
  for (const h of hashes) if (h.length !== 32) throw new ProofError("a proof hash is not 32 bytes");
}

// Tree sizes and indices beyond 2^53 do not fit a JS number exactly: BigInt throughout.
export async function verifyInclusion(leaf, index, size, proof, root) {
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  if (BigInt(index) >= BigInt(size)) throw new ProofError(`index ${index} is not in a tree of ${size}`);
  checkHashes(proof);
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) throw new ProofError("the proof is longer than the tree is deep");
    if ((fn & 1n) === 1n || fn === sn) {
      r = await nodeHash(p, r);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      r = await nodeHash(r, p);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new ProofError("the proof is shorter than the tree is deep");
  if (!equalBytes(r, root)) throw new ProofError("the proof leads to another root hash");
}

export async function verifyConsistency(size1, size2, proof, root1, root2) {
  const first = BigInt(size1);
  const second = BigInt(size2);
  checkHashes(proof);
  if (first > second) throw new ProofError("the older tree is larger than the newer one");
  if (first === second) {
    if (proof.length !== 0) throw new ProofError("equal sizes take an empty proof");
    if (!equalBytes(root1, root2)) throw new ProofError("same size, different root hashes");
    return;
  }
  if (first === 0n) return; // every tree extends the empty one
  if (proof.length === 0) throw new ProofError("empty consistency proof");
  let path = proof;
  if ((first & (first - 1n)) === 0n) path = [root1, ...proof]; // an exact power of two
  let fn = first - 1n;
  let sn = second - 1n;
  while ((fn & 1n) === 1n) { fn >>= 1n; sn >>= 1n; }
  let fr = path[0];
  let sr = path[0];
  for (const c of path.slice(1)) {
    if (sn === 0n) throw new ProofError("the proof is longer than the tree is deep");
    if ((fn & 1n) === 1n || fn === sn) {
      fr = await nodeHash(c, fr);
      sr = await nodeHash(c, sr);
      if ((fn & 1n) === 0n) {
        while ((fn & 1n) === 0n && fn !== 0n) { fn >>= 1n; sn >>= 1n; }
      }
    } else {
      sr = await nodeHash(sr, c);
    }
    fn >>= 1n; sn >>= 1n;
  }
  if (sn !== 0n) throw new ProofError("the proof is shorter than the tree is deep");
  if (!equalBytes(fr, root1)) throw new ProofError("the proof does not lead to the older root");
  if (!equalBytes(sr, root2)) throw new ProofError("the proof does not lead to the newer root");
}

// The four lines the service signs: origin, size, root (base64), timestamp in ms.
export function checkpointText(head) {
  return `${head.origin}\n${head.size}\n${head.root_hash}\n${head.timestamp_ms}\n`;
}

export async function importPublicKey(pem) {
  const body = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
  return crypto.subtle.importKey("spki", fromBase64(body), { name: "Ed25519" }, false, ["verify"]);
}

// The service's key id: the first 8 bytes of SHA-256 over the raw 32-byte key, which is the
// end of an Ed25519 SubjectPublicKeyInfo.
export async function keyId(pem) {
  const body = pem.replace(/-----(BEGIN|END) PUBLIC KEY-----/g, "").replace(/\s+/g, "");
  return toHex(await sha256(fromBase64(body).slice(-32))).slice(0, 16);
}

export async function verifyHeadSignature(head, pem) {
  const key = await importPublicKey(pem);
  const ok = await crypto.subtle.verify(
    { name: "Ed25519" }, key, fromBase64(head.signature), encoder.encode(checkpointText(head)));
  if (!ok) throw new ProofError("the tree head's signature does not verify under the pinned key");
}

export const utf8 = (text) => encoder.encode(text);
