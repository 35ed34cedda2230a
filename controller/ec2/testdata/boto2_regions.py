# Drives an EC2 endpoint with boto 2 (Debian python3-boto), as old scripts
# do: DescribeRegions over HTTPS (the certificate checked against the CA
# file BOTO_CONFIG names) signed with Signature V4 (boto2's default for
# EC2) or V2 (mode "v2", the 'ec2' auth capability). Prints the region
# names, or "ERROR <status> <code>".
import sys

from boto.ec2.connection import EC2Connection
from boto.ec2.regioninfo import RegionInfo
from boto.exception import EC2ResponseError

host, port, path, access_key, secret_key, mode = sys.argv[1:]


class SigV2Connection(EC2Connection):
    def _required_auth_capability(self):
        return ['ec2']


cls = SigV2Connection if mode == 'v2' else EC2Connection
conn = cls(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
           is_secure=True, port=int(port), path=path,
           region=RegionInfo(name='ironbark', endpoint=host))
try:
    print(' '.join(r.name for r in conn.get_all_regions()))
except EC2ResponseError as e:
    print('ERROR', e.status, e.error_code)
