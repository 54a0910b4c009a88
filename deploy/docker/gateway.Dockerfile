# The platform's gateway image (Kubernetes runs it as is; compose mounts nginx.compose.conf
# over its config): unprivileged nginx with the config rendered from the route table
# (deploy/gateway/nginx.k8s.conf), nginx's own errors as problem+json, the auth budget script
# (run by the image's entrypoint), the API reference and the built dashboard.
# Build from the repository root: docker build -f deploy/docker/gateway.Dockerfile .
FROM node:20-alpine AS api-docs
WORKDIR /src/web/api-docs
COPY web/api-docs/package.json web/api-docs/package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY web/api-docs/ ./
COPY docs/api/openapi.json /src/docs/api/openapi.json
RUN npm run build

# The dashboard, built from its lock file (web/dashboard): only dist/ reaches the final image.
FROM node:20-alpine AS dashboard
WORKDIR /src
COPY web/dashboard/package.json web/dashboard/package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY web/dashboard/ ./
RUN rm -rf dist && npm run build

FROM nginxinc/nginx-unprivileged:1.28-alpine
COPY deploy/gateway/nginx.k8s.conf /etc/nginx/nginx.conf
COPY deploy/gateway/problems.conf /etc/nginx/problems.conf
COPY --chmod=0755 deploy/gateway/gateway-env.sh /docker-entrypoint.d/30-gateway-env.sh
COPY --from=api-docs /src/web/api-docs/dist/ /usr/share/nginx/api-docs/
COPY --from=dashboard /src/dist/ /usr/share/nginx/html/
EXPOSE 8080
