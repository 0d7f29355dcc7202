// A digest of what the file backend's addon is built from (binding.gyp and native/), recorded next to
// the prebuilt binaries when they are made, so a test can tell when they no longer match the source.
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/** sha256 over binding.gyp and native/*, each as its name and contents, in name order. */
export function nativeSourceHash(root) {
  const hash = createHash('sha256');
  const files = [
    'binding.gyp',
    ...readdirSync(join(root, 'native'))
      .sort()
      .map((f) => join('native', f)),
  ];
  for (const f of files)
    hash
      .update(`${f}\0`)
      .update(readFileSync(join(root, f)))
      .update('\0');
  return hash.digest('hex');
}
