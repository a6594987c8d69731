// A private S3 bucket as Slipway uses them: all public access blocked, encrypted at rest, reached
// over TLS only, optionally versioned with old versions expiring. The fleet state and the image
// artifacts both live in one.
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';

/** Refuses every request that does not use TLS. */
export function tlsOnlyBucketPolicy(bucketArn: string): Record<string, unknown> {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'DenyInsecureTransport',
        Effect: 'Deny',
        Principal: '*',
        Action: 's3:*',
        Resource: [bucketArn, `${bucketArn}/*`],
        Condition: { Bool: { 'aws:SecureTransport': 'false' } },
      },
    ],
  };
}

export interface PrivateBucketArgs {
  /** Prefix of the generated bucket name (S3 names are global). */
  namePrefix: string;
  /** A KMS key to encrypt with; S3-managed keys (SSE-S3) otherwise. */
  kmsKeyArn?: pulumi.Input<string>;
  /** Keep old object versions this many days; no versioning when absent. */
  noncurrentVersionDays?: number;
  tags: Record<string, string>;
}

export class PrivateBucket extends pulumi.ComponentResource {
  readonly bucket: aws.s3.Bucket;
  readonly arn: pulumi.Output<string>;
  readonly name: pulumi.Output<string>;

  constructor(name: string, args: PrivateBucketArgs, opts?: pulumi.ComponentResourceOptions) {
    super('slipway:aws:PrivateBucket', name, {}, opts);
    const parent = { parent: this };

    this.bucket = new aws.s3.Bucket(
      name,
      { bucketPrefix: args.namePrefix, forceDestroy: false, tags: args.tags },
      parent,
    );
    this.arn = this.bucket.arn;
    this.name = this.bucket.bucket;

    const publicAccess = new aws.s3.BucketPublicAccessBlock(
      `${name}-public-access`,
      {
        bucket: this.bucket.id,
        blockPublicAcls: true,
        blockPublicPolicy: true,
        ignorePublicAcls: true,
        restrictPublicBuckets: true,
      },
      parent,
    );
    new aws.s3.BucketServerSideEncryptionConfiguration(
      `${name}-encryption`,
      {
        bucket: this.bucket.id,
        rules: [
          {
            applyServerSideEncryptionByDefault: args.kmsKeyArn
              ? { sseAlgorithm: 'aws:kms', kmsMasterKeyId: args.kmsKeyArn }
              : { sseAlgorithm: 'AES256' },
            bucketKeyEnabled: args.kmsKeyArn ? true : undefined,
          },
        ],
      },
      parent,
    );
    // The public access block goes first: S3 refuses some policies while it is being applied.
    new aws.s3.BucketPolicy(
      `${name}-tls-only`,
      {
        bucket: this.bucket.id,
        policy: this.bucket.arn.apply((a) => JSON.stringify(tlsOnlyBucketPolicy(a))),
      },
      { parent: this, dependsOn: [publicAccess] },
    );
    if (args.noncurrentVersionDays !== undefined) {
      const versioning = new aws.s3.BucketVersioning(
        `${name}-versioning`,
        { bucket: this.bucket.id, versioningConfiguration: { status: 'Enabled' } },
        parent,
      );
      new aws.s3.BucketLifecycleConfiguration(
        `${name}-lifecycle`,
        {
          bucket: this.bucket.id,
          rules: [
            {
              id: 'expire-old-versions',
              status: 'Enabled',
              filter: {},
              noncurrentVersionExpiration: { noncurrentDays: args.noncurrentVersionDays },
              abortIncompleteMultipartUpload: { daysAfterInitiation: 7 },
            },
          ],
        },
        { parent: this, dependsOn: [versioning] },
      );
    }
    this.registerOutputs({ arn: this.arn, name: this.name });
  }
}
