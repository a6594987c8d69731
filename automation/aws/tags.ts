// Tag keys that mark what belongs to a connection. The connection stack's IAM policy lets the
// agent touch only resources carrying slipway:connection, and requires it on what it creates.
export const tagKeys = {
  connection: 'slipway:connection',
  machine: 'slipway:machine',
  volume: 'slipway:volume',
  project: 'slipway:project',
} as const;
