// The Slipway AWS connection stack (the root Pulumi.yaml's main): reads the slipway:* config,
// declares the connection, and returns what the control plane and the cloud-agent need.
import path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import {
  artifactsDigest,
  defaultArtifactSources,
  imageArtifacts,
  repoRoot,
} from '../images/builder/image';
import { readStackConfig } from './config';
import { SlipwayConnection } from './connection';
import { resolveNetwork } from './network';

export = async () => {
  // Everything that can be checked is checked before the first resource is declared.
  const config = readStackConfig();
  const sources = {
    ...defaultArtifactSources,
    machineAgentBundle: path.resolve(repoRoot, config.machineAgentBundle),
  };
  artifactsDigest(imageArtifacts(sources), config.imageRevision);
  const network = await resolveNetwork(config.network);
  const connection = new SlipwayConnection('slipway', {
    config,
    network,
    sources,
    project: pulumi.getProject(),
    stack: pulumi.getStack(),
  });
  return connection.outputs;
};
