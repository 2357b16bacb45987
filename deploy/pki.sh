#!/bin/sh
# pki.sh - a small PKI for a haven node, made with the openssl command.
#
#   deploy/pki.sh DIR ca                 node CA (DIR/ca.pem, DIR/ca.key)
#   deploy/pki.sh DIR server NAME        server certificate for host NAME (DIR/server.pem, .key)
#   deploy/pki.sh DIR client ORG         client certificate with CN=ORG (DIR/ORG.pem, DIR/ORG.key)
#
# Keys are EC P-256 (supported by nng's TLS engine and by OpenSSL), written 0600. The
# certificate of each partner organisation has the organisation id as its CN; its SHA-256
# fingerprint goes into the partner directory.
set -eu
umask 077
dir=$1
what=$2
days=${HAVEN_PKI_DAYS:-825}
mkdir -p "$dir"

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }

case "$what" in
ca)
	key "$dir/ca.key"
	openssl req -x509 -new -key "$dir/ca.key" -sha256 -days "$days" \
		-subj "/O=haven/CN=haven node CA" \
		-addext "basicConstraints=critical,CA:TRUE" \
		-addext "keyUsage=critical,keyCertSign,cRLSign" \
		-out "$dir/ca.pem"
	;;
server | client)
	name=$3
	case "$name" in
	*[!A-Za-z0-9._-]*) echo "pki.sh: name '$name' may only hold A-Z a-z 0-9 . _ -" >&2; exit 2 ;;
	esac
	if [ "$what" = server ]; then
		out=server
		ext="subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"
	else
		out=$name
		ext="extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
	fi
	key "$dir/$out.key"
	openssl req -new -key "$dir/$out.key" -subj "/O=haven/CN=$name" -out "$dir/$out.csr"
	printf '%s\n' "$ext" > "$dir/$out.ext"
	openssl x509 -req -in "$dir/$out.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
		-CAcreateserial -sha256 -days "$days" -extfile "$dir/$out.ext" \
		-out "$dir/$out.pem" 2>/dev/null
	rm -f "$dir/$out.csr" "$dir/$out.ext"
	;;
*)
	echo "usage: pki.sh DIR ca | server NAME | client ORG" >&2
	exit 2
	;;
esac
