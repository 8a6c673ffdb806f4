#!/usr/bin/env bash
# Roll the served artifact version back (or forward) by restoring an older S3 object version of the
# pointer object. The artifacts bucket is versioned, so every pointer the delta update ever wrote is
# kept (for NoncurrentVersionRetentionDays); warm API containers pick the restored pointer up within
# POINTER_CHECK_SECONDS and new containers start on it. Nothing is deleted.
#
#   infra/rollback.sh STACK list              # pointer history: S3 version id, date, artifact version
#   infra/rollback.sh STACK previous          # restore the pointer written before the current one
#   infra/rollback.sh STACK to S3_VERSION_ID  # restore a given pointer version from `list`
#
# Needs the AWS CLI v2 with credentials for the stack's account/region (AWS_PROFILE, AWS_REGION).
set -euo pipefail

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
[[ $# -ge 2 ]] || usage
stack=$1 action=$2

output() {
  aws cloudformation describe-stacks --stack-name "$stack" \
    --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
bucket=$(output ArtifactsBucketName)
key=$(output ArtifactsPointerKey)
[[ -n $bucket && $bucket != None ]] || { echo "stack $stack has no ArtifactsBucketName output" >&2; exit 1; }

versions() {  # newest first: VersionId<TAB>LastModified
  aws s3api list-object-versions --bucket "$bucket" --prefix "$key" \
    --query "Versions[?Key=='$key'] | sort_by(@, &LastModified) | reverse(@)[].[VersionId, LastModified]" \
    --output text
}

show() {  # the artifact version a pointer object version names
  local tmp; tmp=$(mktemp)
  if aws s3api get-object --bucket "$bucket" --key "$key" --version-id "$1" "$tmp" >/dev/null 2>&1; then
    python3 -c 'import json, sys; p = json.load(open(sys.argv[1])); print(p["version"], p.get("published_at", ""))' \
      "$tmp" 2>/dev/null || echo "(not a pointer)"
  else
    echo "(unreadable)"
  fi
  rm -f "$tmp"
}

restore() {
  echo "restoring s3://$bucket/$key from object version $1 ($(show "$1"))"
  aws s3api copy-object --bucket "$bucket" --key "$key" \
    --copy-source "$bucket/$key?versionId=$1" --cache-control no-cache --content-type application/json \
    --metadata-directive REPLACE >/dev/null
  echo "done: API containers switch within POINTER_CHECK_SECONDS"
}

case $action in
  list)
    versions | while IFS=$'\t' read -r vid date; do printf '%s  %s  %s\n' "$vid" "$date" "$(show "$vid")"; done
    ;;
  previous)
    prev=$(versions | sed -n 2p | cut -f1)
    [[ -n $prev ]] || { echo "no earlier pointer version to restore" >&2; exit 1; }
    restore "$prev"
    ;;
  to)
    [[ $# -eq 3 ]] || usage
    restore "$3"
    ;;
  *) usage ;;
esac
