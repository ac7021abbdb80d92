//! `search`: the repositories a registry lists. A private registry (distribution) answers
//! `GET /v2/_catalog` (then `/v2/NAME/tags/list`); Docker Hub answers its own search API.

use crate::client::{Client, status_error};
use crate::error::{Error, Result};

/// One repository a search found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchResult {
    /// `host:port/name` for a private registry, the Hub's name for Docker Hub.
    pub name: String,
    pub description: String,
    pub stars: u64,
    pub official: bool,
    pub automated: bool,
}

impl Client {
    /// The repositories of `registry` whose name contains `term` (at most `limit`): from the
    /// catalog of a private registry, with its tags as the description, or from Docker Hub's
    /// search when `registry` is `docker.io`.
    pub fn search(&self, registry: &str, term: &str, limit: usize) -> Result<Vec<SearchResult>> {
        self.block_on(self.search_async(registry, term, limit))?
    }

    async fn search_async(&self, registry: &str, term: &str, limit: usize) -> Result<Vec<SearchResult>> {
        if registry == "docker.io" {
            return self.hub_search(term, limit).await;
        }
        let reference = oci::Reference::parse(&format!("{registry}/catalog"))?;
        let base = self.base_url(&reference);
        let mut names = Vec::new();
        // The catalog is paged (`?n=&last=`); a registry that ignores paging answers all at once.
        let mut last: Option<String> = None;
        loop {
            let mut url = format!("{base}_catalog?n=1000");
            if let Some(l) = &last {
                url.push_str(&format!("&last={l}"));
            }
            let resp = self.send(registry, "registry:catalog:*", |http| Ok(http.get(&url))).await?;
            if !resp.status().is_success() {
                return Err(status_error("GET", &url, resp).await);
            }
            #[derive(serde::Deserialize)]
            struct Catalog {
                #[serde(default)]
                repositories: Vec<String>,
            }
            let page: Catalog = resp.json().await.map_err(|e| Error::Status { method: "GET".into(), url: url.clone(), status: 200, message: format!("not a catalog: {e}") })?;
            let done = page.repositories.len() < 1000 || page.repositories.last() == last.as_ref();
            last = page.repositories.last().cloned();
            names.extend(page.repositories);
            if done {
                break;
            }
        }
        let mut out = Vec::new();
        for name in names.into_iter().filter(|n| n.contains(term)).take(limit) {
            let url = format!("{base}{name}/tags/list");
            let scope = format!("repository:{name}:pull");
            let resp = self.send(registry, &scope, |http| Ok(http.get(&url))).await?;
            #[derive(serde::Deserialize)]
            struct Tags {
                #[serde(default)]
                tags: Option<Vec<String>>,
            }
            let tags = if resp.status().is_success() { resp.json::<Tags>().await.ok().and_then(|t| t.tags).unwrap_or_default() } else { Vec::new() };
            let mut tags = tags;
            tags.sort();
            out.push(SearchResult { name: format!("{registry}/{name}"), description: if tags.is_empty() { String::new() } else { format!("tags: {}", tags.join(", ")) }, stars: 0, official: false, automated: false });
        }
        Ok(out)
    }

    async fn hub_search(&self, term: &str, limit: usize) -> Result<Vec<SearchResult>> {
        let mut url = reqwest::Url::parse("https://index.docker.io/v1/search").map_err(|e| Error::Connection { url: "https://index.docker.io/v1/search".into(), reason: e.to_string() })?;
        url.query_pairs_mut().append_pair("q", term).append_pair("n", &limit.to_string());
        let url = url.to_string();
        let resp = self.send("docker.io", "", |http| Ok(http.get(&url))).await?;
        if !resp.status().is_success() {
            return Err(status_error("GET", &url, resp).await);
        }
        #[derive(serde::Deserialize)]
        struct Hub {
            #[serde(default)]
            results: Vec<HubResult>,
        }
        #[derive(serde::Deserialize)]
        struct HubResult {
            name: String,
            #[serde(default)]
            description: String,
            #[serde(default)]
            star_count: u64,
            #[serde(default)]
            is_official: bool,
            #[serde(default)]
            is_automated: bool,
        }
        let hub: Hub = resp.json().await.map_err(|e| Error::Status { method: "GET".into(), url: url.clone(), status: 200, message: format!("not a search answer: {e}") })?;
        Ok(hub.results.into_iter().take(limit).map(|r| SearchResult { name: r.name, description: r.description, stars: r.star_count, official: r.is_official, automated: r.is_automated }).collect())
    }
}
