/**
 * Everything an S3 Files mount from outside AWS needs, in one stack:
 *
 *   client --TLS/2049--> internet-facing NLB (SG: allowedCidr only)
 *                          --> IP target = pinned mount-target address
 *                              (SG: 2049 from the NLB SG only)
 *                              --> S3 Files file system --> versioned S3 bucket
 *
 * The mount target's IPv4 address is an *input* of AWS::S3Files::MountTarget
 * (it is not a GetAtt attribute), so the stack picks it at synth time and
 * hands the same string to the mount target and to the NLB target group.
 */
import { Annotations, Aws, CfnOutput, CfnResource, Duration, Fn, RemovalPolicy, Stack, StackProps, Tags } from 'aws-cdk-lib';
import * as ec2 from 'aws-cdk-lib/aws-ec2';
import * as elbv2 from 'aws-cdk-lib/aws-elasticloadbalancingv2';
import * as elbv2Targets from 'aws-cdk-lib/aws-elasticloadbalancingv2-targets';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import * as s3files from 'aws-cdk-lib/aws-s3files';
import { Construct } from 'constructs';
import { ConfigError } from './config';
import { defaultHostAddress, formatIpv4, parseIpv4, parseIpv4Cidr, subnetHostProblem } from './ipv4';

/** NFS port of the S3 Files mount target (NFSv4.1/4.2 inside TLS). */
export const NFS_PORT = 2049;

/** The service principal S3 Files uses to assume its role. */
export const S3FILES_SERVICE_PRINCIPAL = 'elasticfilesystem.amazonaws.com';

export interface S3FilesMountStackProps extends StackProps {
  /** IPv4 CIDR blocks allowed to reach the NLB on TCP 2049. Required, at least one. */
  readonly allowedCidrs: string[];
  /** VPC CIDR block. @default 10.20.0.0/16 */
  readonly vpcCidr?: string;
  /** Pinned mount-target address. @default host .100 of the mount-target subnet */
  readonly mountTargetIp?: string;
  /** Put the mount target in a private isolated subnet with an S3 gateway endpoint. @default false */
  readonly privateSubnets?: boolean;
  /** Bucket prefix the file system exposes. @default whole bucket */
  readonly prefix?: string;
  /** Also grant s3files:ClientRootAccess in the client policy. @default false */
  readonly clientRootAccess?: boolean;
  /** Also grant direct S3 reads (s3:GetObject*) of the bucket in the client policy. @default false */
  readonly clientDirectS3Read?: boolean;
}

export class S3FilesMountStack extends Stack {
  readonly vpc: ec2.Vpc;
  readonly bucket: s3.Bucket;
  readonly serviceRole: iam.Role;
  readonly serviceRolePolicy: iam.Policy;
  readonly fileSystem: s3files.CfnFileSystem;
  readonly mountTarget: s3files.CfnMountTarget;
  /** The pinned IPv4 address shared by the mount target and the NLB target. */
  readonly mountTargetIp: string;
  readonly nlb: elbv2.NetworkLoadBalancer;
  readonly nlbSecurityGroup: ec2.SecurityGroup;
  readonly mountTargetSecurityGroup: ec2.SecurityGroup;
  readonly clientPolicy: iam.ManagedPolicy;

  constructor(scope: Construct, id: string, props: S3FilesMountStackProps) {
    super(scope, id, props);

    if (!props.allowedCidrs || props.allowedCidrs.length === 0) {
      throw new ConfigError('S3FilesMountStack needs at least one allowedCidr (context parameter "allowedCidr")');
    }
    const privateSubnets = props.privateSubnets ?? false;
    Tags.of(this).add('Project', 'efs-proxy');

    // ---- Network: one AZ, no NAT. -----------------------------------------
    const subnetConfiguration: ec2.SubnetConfiguration[] = [
      { name: 'Public', subnetType: ec2.SubnetType.PUBLIC, cidrMask: 24, mapPublicIpOnLaunch: false },
    ];
    if (privateSubnets) {
      subnetConfiguration.push({ name: 'MountTarget', subnetType: ec2.SubnetType.PRIVATE_ISOLATED, cidrMask: 24 });
    }
    this.vpc = new ec2.Vpc(this, 'Vpc', {
      ipAddresses: ec2.IpAddresses.cidr(props.vpcCidr ?? '10.20.0.0/16'),
      maxAzs: 1,
      natGateways: 0,
      subnetConfiguration,
      gatewayEndpoints: privateSubnets
        ? { S3: { service: ec2.GatewayVpcEndpointAwsService.S3, subnets: [{ subnetType: ec2.SubnetType.PRIVATE_ISOLATED }] } }
        : undefined,
    });
    silenceLibraryLintWarning(this);
    const publicSubnet = this.vpc.publicSubnets[0];
    const mountTargetSubnet = privateSubnets ? this.vpc.isolatedSubnets[0] : publicSubnet;

    // ---- The pinned mount-target address. ---------------------------------
    this.mountTargetIp = pickMountTargetIp(mountTargetSubnet.ipv4CidrBlock, props.mountTargetIp);

    // ---- Bucket: versioning is required by S3 Files. ----------------------
    this.bucket = new s3.Bucket(this, 'Bucket', {
      versioned: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      enforceSSL: true,
      // File data lives here: never delete it with the stack.
      removalPolicy: RemovalPolicy.RETAIN,
    });

    // ---- S3 Files service role. --------------------------------------------
    this.serviceRole = new iam.Role(this, 'S3FilesServiceRole', {
      description: 'Assumed by Amazon S3 Files to synchronise the file system with its bucket',
      assumedBy: new iam.ServicePrincipal(S3FILES_SERVICE_PRINCIPAL).withConditions({
        StringEquals: { 'aws:SourceAccount': Aws.ACCOUNT_ID },
        ArnLike: { 'aws:SourceArn': this.formatArn({ service: 's3files', resource: 'file-system', resourceName: '*' }) },
      }),
    });
    const eventRuleArn = (name: string) =>
      this.formatArn({ service: 'events', region: '*', resource: 'rule', resourceName: name });
    this.serviceRolePolicy = new iam.Policy(this, 'S3FilesServiceRolePolicy', {
      roles: [this.serviceRole],
      statements: [
        new iam.PolicyStatement({
          sid: 'BucketLevel',
          actions: ['s3:ListBucket*'],
          resources: [this.bucket.bucketArn],
        }),
        new iam.PolicyStatement({
          sid: 'ObjectLevel',
          actions: ['s3:AbortMultipartUpload', 's3:DeleteObject*', 's3:GetObject*', 's3:List*', 's3:PutObject*'],
          resources: [this.bucket.arnForObjects('*')],
        }),
        new iam.PolicyStatement({
          sid: 'ManageOwnEventBridgeRules',
          actions: [
            'events:DeleteRule',
            'events:DisableRule',
            'events:EnableRule',
            'events:PutRule',
            'events:PutTargets',
            'events:RemoveTargets',
          ],
          resources: [eventRuleArn('DO-NOT-DELETE-S3-Files*')],
          conditions: { StringEquals: { 'events:ManagedBy': S3FILES_SERVICE_PRINCIPAL } },
        }),
        new iam.PolicyStatement({
          sid: 'ReadEventBridgeRules',
          actions: ['events:DescribeRule', 'events:ListRuleNamesByTarget', 'events:ListRules', 'events:ListTargetsByRule'],
          resources: [eventRuleArn('*')],
        }),
      ],
    });

    // ---- File system: Bucket is the ARN, never the name. -------------------
    this.fileSystem = new s3files.CfnFileSystem(this, 'FileSystem', {
      bucket: this.bucket.bucketArn,
      roleArn: this.serviceRole.roleArn,
      prefix: props.prefix,
      tags: [{ key: 'Name', value: `${this.stackName}-fs` }],
    });
    // The role ARN alone would let CloudFormation create the file system
    // before the role has any permission; S3 Files then fails to reach the bucket.
    this.fileSystem.node.addDependency(this.serviceRolePolicy);

    // ---- Security groups: internet -> NLB SG -> mount-target SG. ----------
    this.nlbSecurityGroup = new ec2.SecurityGroup(this, 'NlbSecurityGroup', {
      vpc: this.vpc,
      description: 'S3 Files NLB: NFS over TLS (TCP 2049) from allowedCidr only',
      allowAllOutbound: false,
    });
    for (const cidr of props.allowedCidrs) {
      const parsed = parseIpv4Cidr(cidr);
      if (typeof parsed === 'string') throw new ConfigError(`allowedCidr: ${parsed}`);
      if (parsed.prefix === 0) {
        Annotations.of(this).addWarning(
          'allowedCidr includes 0.0.0.0/0: the NFS port is open to the whole internet and only TLS and IAM protect the file system',
        );
      }
      this.nlbSecurityGroup.addIngressRule(ec2.Peer.ipv4(cidr), ec2.Port.tcp(NFS_PORT), `NFS over TLS from ${cidr}`);
    }
    this.mountTargetSecurityGroup = new ec2.SecurityGroup(this, 'MountTargetSecurityGroup', {
      vpc: this.vpc,
      description: 'S3 Files mount target: TCP 2049 from the NLB security group only',
      allowAllOutbound: false,
    });
    this.nlbSecurityGroup.connections.allowTo(
      this.mountTargetSecurityGroup,
      ec2.Port.tcp(NFS_PORT),
      'NFS from the NLB (traffic and health checks) to the mount target',
    );

    // ---- Mount target with the pinned address. -----------------------------
    this.mountTarget = new s3files.CfnMountTarget(this, 'MountTarget', {
      fileSystemId: this.fileSystem.attrFileSystemId,
      subnetId: mountTargetSubnet.subnetId,
      securityGroups: [this.mountTargetSecurityGroup.securityGroupId],
      ipAddressType: 'IPV4_ONLY',
      ipv4Address: this.mountTargetIp,
    });

    // ---- NLB: TCP 2049 -> IP target = the mount target's address. ----------
    this.nlb = new elbv2.NetworkLoadBalancer(this, 'Nlb', {
      vpc: this.vpc,
      internetFacing: true,
      vpcSubnets: { subnets: [publicSubnet] },
      // Security groups can only be attached when the NLB is created.
      securityGroups: [this.nlbSecurityGroup],
    });
    // Create the mount target first so that the NLB's own network interfaces
    // in the same subnet cannot take the pinned address.
    this.nlb.node.addDependency(this.mountTarget);
    const targetGroup = new elbv2.NetworkTargetGroup(this, 'MountTargetGroup', {
      vpc: this.vpc,
      port: NFS_PORT,
      protocol: elbv2.Protocol.TCP,
      targetType: elbv2.TargetType.IP,
      targets: [new elbv2Targets.IpTarget(this.mountTargetIp, NFS_PORT)],
      // Traffic reaches the mount target from the NLB's addresses, so the
      // mount-target SG only has to admit the NLB SG.
      preserveClientIp: false,
      deregistrationDelay: Duration.seconds(30),
      healthCheck: {
        protocol: elbv2.Protocol.TCP,
        port: String(NFS_PORT),
        interval: Duration.seconds(10),
        healthyThresholdCount: 2,
        unhealthyThresholdCount: 2,
      },
    });
    this.nlb.addListener('Nfs', { port: NFS_PORT, protocol: elbv2.Protocol.TCP, defaultTargetGroups: [targetGroup] });

    // ---- Client policy for whoever mounts (attach it to a user or role). ---
    const clientActions = ['s3files:ClientMount', 's3files:ClientWrite'];
    if (props.clientRootAccess) clientActions.push('s3files:ClientRootAccess');
    const clientStatements = [
      new iam.PolicyStatement({
        sid: 'MountAndWrite',
        actions: clientActions,
        resources: [this.fileSystem.attrFileSystemArn],
      }),
    ];
    if (props.clientDirectS3Read) {
      clientStatements.push(
        new iam.PolicyStatement({
          sid: 'DirectS3Read',
          actions: ['s3:GetObject', 's3:GetObjectVersion'],
          resources: [this.bucket.arnForObjects('*')],
        }),
      );
    }
    this.clientPolicy = new iam.ManagedPolicy(this, 'ClientPolicy', {
      description: `Mount (and write to) the S3 Files file system of stack ${this.stackName}`,
      statements: clientStatements,
    });

    // ---- Outputs: everything `docker-mount.sh up` needs. -------------------
    new CfnOutput(this, 'NlbDns', {
      description: 'DNS name of the NLB; the proxy connects here on TCP 2049',
      value: this.nlb.loadBalancerDnsName,
    });
    new CfnOutput(this, 'BucketName', { description: 'S3 bucket behind the file system', value: this.bucket.bucketName });
    new CfnOutput(this, 'FileSystemId', {
      description: 'S3 Files file system id (fs-...)',
      value: this.fileSystem.attrFileSystemId,
    });
    new CfnOutput(this, 'FileSystemArn', { description: 'S3 Files file system ARN', value: this.fileSystem.attrFileSystemArn });
    new CfnOutput(this, 'MountTargetAzId', {
      description: 'AZ id of the mount target; part of the TLS server name {az_id}.{fs_id}.s3files.{region}.on.aws',
      value: this.mountTarget.attrAvailabilityZoneId,
    });
    new CfnOutput(this, 'MountTargetIp', { description: 'Pinned IPv4 address of the mount target (the NLB target)', value: this.mountTargetIp });
    new CfnOutput(this, 'MountTargetDnsName', {
      description: 'Name the mount target TLS certificate is checked against (efs-utils s3files format)',
      value: Fn.join('.', [this.mountTarget.attrAvailabilityZoneId, this.fileSystem.attrFileSystemId, 's3files', this.region, 'on.aws']),
    });
    new CfnOutput(this, 'Region', { description: 'Region of the file system', value: this.region });
    new CfnOutput(this, 'ClientPolicyArn', {
      description: 'Managed policy with s3files:ClientMount/ClientWrite; attach it to the identity that mounts',
      value: this.clientPolicy.managedPolicyArn,
    });
  }
}

/**
 * The VPC's restrictDefaultSecurityGroup custom resource (aws-cdk-lib's own
 * provider) declares a DependsOn on its role that cfn-lint reports as
 * redundant (W3005). Silence that one check on that one resource, so the
 * template lints clean without a global ignore.
 */
function silenceLibraryLintWarning(stack: Stack): void {
  const provider = stack.node.tryFindChild('Custom::VpcRestrictDefaultSGCustomResourceProvider');
  const handler = provider?.node.tryFindChild('Handler');
  if (handler instanceof CfnResource) {
    handler.addMetadata('cfn-lint', { config: { ignore_checks: ['W3005'] } });
  }
}

/**
 * The mount-target address: the requested one after checking that AWS can
 * assign it in the subnet, or a default host of the subnet.
 */
export function pickMountTargetIp(subnetCidr: string, requested?: string): string {
  const subnet = parseIpv4Cidr(subnetCidr);
  if (typeof subnet === 'string') {
    throw new Error(`mount-target subnet CIDR must be known at synth time: ${subnet}`);
  }
  if (requested === undefined) return formatIpv4(defaultHostAddress(subnet));
  const address = parseIpv4(requested);
  if (address === undefined) throw new ConfigError(`mountTargetIp: "${requested}" is not an IPv4 address`);
  const problem = subnetHostProblem(subnet, address);
  if (problem) throw new ConfigError(`mountTargetIp: ${problem}; pick a host address in ${subnetCidr}`);
  return requested;
}
