// Disk and inode use of the filesystem that holds the cache, via statfs. On the local provider
// the volume is a directory, so this is the host filesystem it lives on.
import { statfs } from 'node:fs/promises';

export interface CacheUsage {
  cacheBytesUsed: number;
  cacheBytesTotal: number;
  inodesUsed: number;
  inodesTotal: number;
}

export const noCache: CacheUsage = {
  cacheBytesUsed: 0,
  cacheBytesTotal: 0,
  inodesUsed: 0,
  inodesTotal: 0,
};

export async function cacheUsage(dir: string): Promise<CacheUsage> {
  const s = await statfs(dir);
  return {
    cacheBytesUsed: (s.blocks - s.bfree) * s.bsize,
    cacheBytesTotal: s.blocks * s.bsize,
    inodesUsed: Math.max(0, s.files - s.ffree),
    inodesTotal: s.files,
  };
}
