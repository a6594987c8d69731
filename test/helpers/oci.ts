// Reads an OCI image archive the way a registry or runtime would: index -> manifest -> layers,
// and returns the files of the image's filesystem with their contents (small files only).
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

interface Descriptor {
  mediaType: string;
  digest: string;
}

export async function ociImageFiles(archive: string): Promise<Map<string, string>> {
  const dir = await mkdtemp(path.join(tmpdir(), 'slipway-oci-'));
  try {
    await exec('tar', ['-xf', archive, '-C', dir]);
    const blob = (d: Descriptor) => path.join(dir, 'blobs', ...d.digest.split(':'));
    const index = JSON.parse(await readFile(path.join(dir, 'index.json'), 'utf8')) as {
      manifests: Descriptor[];
    };
    let manifestDesc = index.manifests[0]!;
    if (manifestDesc.mediaType.includes('index')) {
      const nested = JSON.parse(await readFile(blob(manifestDesc), 'utf8')) as {
        manifests: Descriptor[];
      };
      manifestDesc = nested.manifests[0]!;
    }
    const manifest = JSON.parse(await readFile(blob(manifestDesc), 'utf8')) as {
      layers: Descriptor[];
    };
    const rootfs = path.join(dir, 'rootfs');
    await exec('mkdir', ['-p', rootfs]);
    for (const layer of manifest.layers) await exec('tar', ['-xzf', blob(layer), '-C', rootfs]);
    const { stdout } = await exec('find', [rootfs, '-type', 'f', '-size', '-64k']);
    const files = new Map<string, string>();
    for (const file of stdout.split('\n').filter(Boolean)) {
      files.set('/' + path.relative(rootfs, file), await readFile(file, 'utf8'));
    }
    return files;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
