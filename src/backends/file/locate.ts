// The directory of this module, in both module formats. The ESM build reads import.meta.url; the
// build script (scripts/build.mjs) replaces the CommonJS copy with one that reads __dirname, since
// TypeScript will not emit import.meta for CommonJS.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

// Only the CommonJS compile objects (and its output is replaced), so @ts-expect-error would fail the ESM one.
// eslint-disable-next-line @typescript-eslint/ban-ts-comment
// @ts-ignore
export const here: string = dirname(fileURLToPath(import.meta.url));
